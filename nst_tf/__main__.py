"""`python -m nst_tf` runs the nst-tf command line."""

from nst_tf.commands.stylize import main

if __name__ == "__main__":
    main()
